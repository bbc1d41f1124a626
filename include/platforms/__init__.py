"""Platform layer (DESIGN §5): one httpx client and one Airflow hook per platform."""
