"""The compiler: a validated machine spec -> runtime `StateMachine` objects."""
