"""What users look at: terminal charts and tables, pictures, exported files."""
