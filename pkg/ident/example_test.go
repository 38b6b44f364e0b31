package ident_test

import (
	"fmt"

	"github.com/tcpwrapd/tcpwrapd/pkg/ident"
)

func ExampleParseReply() {
	for _, line := range []string{
		"40000 , 143 : USERID : UNIX : bob smith\r\n",
		"40000 , 143 : USERID :: bob\r\n",
		"40000 , 143 : ERROR : NO-USER\r\n",
	} {
		user, err := ident.ParseReply([]byte(line), 40000, 143)
		fmt.Printf("%q %v\n", user, err != nil)
	}
	// Output:
	// "bob" false
	// "" true
	// "" true
}
