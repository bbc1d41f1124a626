"""Platform layer (docs/architecture.md §5): one httpx client and one Airflow hook per platform."""
