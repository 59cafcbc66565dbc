"""The confidential master file: schema, import, storage, synthetic generator."""
