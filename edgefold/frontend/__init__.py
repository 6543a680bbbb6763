"""Front ends that turn raw camera pixels into what a network was trained on (DCT coefficients)."""
