/* Placeholder while the example is written. */
int
main(void)
{
    return 0;
}
