print("vfs-rebuild: not yet")
