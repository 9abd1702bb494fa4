"""Signal processing as public functions: loudness (BS.1770, EBU R128), true peak, spectra, the limiter."""
