"""Image backbones behind frozen 2D teachers and the feature taps of 3D encoders."""
