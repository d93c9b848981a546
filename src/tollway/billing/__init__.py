"""Money: credits, the ledger, reservations, budgets and usage accounting."""
