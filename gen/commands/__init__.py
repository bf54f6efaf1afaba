"""The `gen` commands, one module per command family, each a thin click wrapper over gen and db;
options.py holds the options and helpers they share. gen/cli.py assembles them into the group;
nothing else imports them."""
