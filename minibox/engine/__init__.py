"""The engine: the state machine of containers, as reserve -> plan -> apply -> save, run by the CLI's verbs."""
