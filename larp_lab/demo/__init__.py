"""Handlers behind the Gradio app (``app.py`` stays a thin UI file)."""
