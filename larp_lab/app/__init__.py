"""The Gradio app's logic (``app.py`` at the repository root is the UI layout and wiring only).

* :mod:`.cache`: :class:`~.cache.ModelCache` loads models by name once and shares them;
* :mod:`.handlers`: what each button does, as plain functions calling :mod:`larp_lab.pipelines`;
* :mod:`.figures`: the app's figures (from :mod:`larp_lab.viz`) and the Explore tab;
* :mod:`.examples`: the example clips in the order offered (the tokenizer's training data first) and
  what the app says about that data;
* :mod:`.tour`: every tab driven in a headless Chromium and screenshotted at two window sizes
  (the browser test and ``scripts/app_screens.py``; needs the dev extra's playwright).
"""
