"""Layer 5, for the notebooks: ``run`` executes one headless with progress
(``make demo``, ``make notebook``), ``figures`` draws photos with captions."""
