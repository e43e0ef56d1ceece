from edgeops.training.run import exit_now, main

exit_now(main())
