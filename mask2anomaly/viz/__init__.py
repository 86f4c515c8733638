"""Pictures and reports: heatmaps, class and panoptic colourings, thumbnails, and the HTML pages."""
