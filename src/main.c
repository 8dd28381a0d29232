/* rydes: the Wild Rydes gateway and messaging engine. Everything lives in the library; see
 * src/app/cli.c for the commands. */
#include "rydes/cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
