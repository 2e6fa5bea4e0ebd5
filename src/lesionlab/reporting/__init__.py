"""Reporting: figures, escaped HTML pieces, the report site a reviewer opens and the generated tables of the docs."""
