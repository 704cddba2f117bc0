"""movierec_simulator: a seeded synthetic movie world that emits the movielog stream and plays users."""
