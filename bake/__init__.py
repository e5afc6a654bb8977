"""Big Data BBQ image tooling: spec -> fingerprint -> build -> artifact -> publish -> deploy."""
