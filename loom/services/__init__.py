"""Parity services and the control plane (Activator, Mirroring, Direct-Lake-Shim): later issues."""
