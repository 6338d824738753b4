"""Node (I/O): files under a root, nodecfg's state and journal, the node's containerd."""
