"""Where desired state comes from: a directory, or a git repository at a ref."""
