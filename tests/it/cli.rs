//! The radacctd binary itself: SIGTERM drain, configuration errors, check-config, nas subcommands.
