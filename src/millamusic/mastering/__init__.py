"""A mix to a delivery target: the chain's settings (config), the chain, and album mastering."""
