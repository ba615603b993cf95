"""Small pieces shared by every stage: configs, errors, command-line glue, file safety."""
