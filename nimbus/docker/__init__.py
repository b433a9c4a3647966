"""Docker Swarm on the overlay: pure planning (plan, compose) and the engine they apply to."""
