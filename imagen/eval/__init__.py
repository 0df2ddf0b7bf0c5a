"""Caption-compliance evaluation of shapes images and sharpness of super-resolution outputs."""
