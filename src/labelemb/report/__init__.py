"""Tables, curves, heatmaps and nearest labels from run directories."""
