"""Layer 5, for the notebooks: ``run`` executes one headless with progress
(``make demo``, ``make notebook``), ``figures`` draws photos with captions;
coursework: ``assignment`` builds the student edition, ``grade`` grades what
comes back (``execute`` runs a notebook with time limits)."""
