"""The stress tool with an oracle (scripts/stress.py): workers, op kinds, oracle, runner.

- ``oracle``: what a file must contain (FileModel), the self-describing records
  of shared-directory files, and the libc calls Python lacks (fallocate, renameat2).
- ``opkinds``: every kind of operation a worker can do, in one registry
  (name -> weight, function); window remaps will be one more entry.
- ``worker``: one seeded process: its own files, its op history, verification.
- ``runner``: forks the workers, prints progress, checks the shared directory
  at the end, prints the summary; mounts a fresh shmfs when asked to.
"""
