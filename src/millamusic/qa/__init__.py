"""What release managers check: the delivery rules (`millamusic check`) and the album report."""
