"""Pipeline plumbing: the contracts between stages, running a stage's notebook, process hygiene, the generated
code dependencies of dvc.yaml and the opt-in timing records of the benchmark."""
