"""What the UI tabs call: one module per tab, plus what they share. No Gradio here."""
