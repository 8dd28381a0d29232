/* The command line of the rydes binary: serve, migrate, token create, version. */
#ifndef RYDES_CLI_H
#define RYDES_CLI_H

/* Runs the command given by argv; returns the process exit status. */
int cli_main(int argc, char **argv);

#endif
