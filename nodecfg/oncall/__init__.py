"""On-call answers (pure): where a pull goes, what is wrong with a node, which images to mirror."""
