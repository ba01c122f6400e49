"""Training 3D Gaussians: parameters and optimisers (`model`), losses (`losses`), the loop
(`trainer`). Imports torch; the pipeline's train stage imports it lazily in its worker."""
