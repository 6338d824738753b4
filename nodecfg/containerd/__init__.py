"""How containerd behaves (pure): its file formats, lookups, names and releases."""
