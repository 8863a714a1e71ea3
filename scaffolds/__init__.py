"""The templates that ``knserve func create`` renders (one folder per template under templates/)."""
