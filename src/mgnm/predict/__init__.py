"""Using a trained model: predictions from memory, new users, new items, cold-start splits."""
