"""Template matching: rotation sets, wedge/CTF-weighted templates, FFT correlation, false-alarm thresholds."""
