package main

import "errors"

func runFrontend(args []string) error {
	return errors.New("the SMTP frontend is not part of this build yet")
}
