"""Projects: the configuration (routing policy) each project carries."""
