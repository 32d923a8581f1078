# embed.cmake — write the bytes of IN as a NUL-terminated C array `prelude_text` into OUT.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* generated from ir/prelude.rnn by cmake/embed.cmake */\nconst char prelude_text[] = {\n${bytes}0x00};\n")
