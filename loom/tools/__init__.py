"""Tools the agent can call: one module per tool, registered in `registry.TOOLS`."""
