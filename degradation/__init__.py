"""The degradation flow (DeFlow-lite): learns how real LR images differ from clean LR ones."""
