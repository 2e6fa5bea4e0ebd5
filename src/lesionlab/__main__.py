import sys

from lesionlab.cli import main, quick_exit

status = main()
quick_exit(status)  # a stage that loaded TensorFlow or PyTorch: skip their ~1.3 s teardown (cli.quick_exit)
sys.exit(status)
