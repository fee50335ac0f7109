"""`agentfsm ui`: a local web app over the application layer (runs, steps, diagrams, actions), served by uvicorn."""
