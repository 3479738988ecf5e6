"""The FUSE wire protocol: ``protocol`` (numbers and layouts) and ``codec`` (bytes <-> values)."""
