"""Fine-tuning the support tone on ticket history (see the fine-tuning issue)."""
