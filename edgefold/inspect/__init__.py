"""Parameters and MACs per layer, before and after folding (``edgefold inspect``)."""
