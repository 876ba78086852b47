"""The agent: settings, model clients, the turn loop, conversation memory and offline mode."""
