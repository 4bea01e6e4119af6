"""Rolling hot spots: Getis-Ord Gi*, kernel density and active deformation areas."""
