print("vfs-bench: not yet")
