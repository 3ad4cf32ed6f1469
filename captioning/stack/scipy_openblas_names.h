/* Theano's BLAS calls, renamed to the symbols of scipy-openblas32.
 *
 * scipy-openblas32 (PyPI) is a current OpenBLAS with 32-bit integers,
 * like the Fortran BLAS that Theano's C code calls (sgemm_, sgemv_, ...),
 * but its symbols carry the prefix scipy_ so that it never clashes with
 * another BLAS in the process. captioning/stack/theano_setup.py passes
 * "-include" this file to every module Theano compiles, so Theano's own
 * declarations and calls name the prefixed functions.
 * One line per function that Theano's BLAS header (theano/tensor/
 * blas_headers.py) declares and the library provides; tests/
 * test_theano_setup.py checks that list against both. */
#ifndef CAPTIONING_SCIPY_OPENBLAS_NAMES_H
#define CAPTIONING_SCIPY_OPENBLAS_NAMES_H
#define caxpy_ scipy_caxpy_
#define ccopy_ scipy_ccopy_
#define cgbmv_ scipy_cgbmv_
#define cgemm_ scipy_cgemm_
#define cgemv_ scipy_cgemv_
#define cgerc_ scipy_cgerc_
#define cgeru_ scipy_cgeru_
#define chbmv_ scipy_chbmv_
#define chemm_ scipy_chemm_
#define chemv_ scipy_chemv_
#define cher2_ scipy_cher2_
#define cher2k_ scipy_cher2k_
#define cher_ scipy_cher_
#define cherk_ scipy_cherk_
#define chpmv_ scipy_chpmv_
#define chpr2_ scipy_chpr2_
#define chpr_ scipy_chpr_
#define cscal_ scipy_cscal_
#define csscal_ scipy_csscal_
#define cswap_ scipy_cswap_
#define csymm_ scipy_csymm_
#define csyr2k_ scipy_csyr2k_
#define csyrk_ scipy_csyrk_
#define ctbmv_ scipy_ctbmv_
#define ctbsv_ scipy_ctbsv_
#define ctpmv_ scipy_ctpmv_
#define ctpsv_ scipy_ctpsv_
#define ctrmm_ scipy_ctrmm_
#define ctrmv_ scipy_ctrmv_
#define ctrsm_ scipy_ctrsm_
#define ctrsv_ scipy_ctrsv_
#define daxpy_ scipy_daxpy_
#define dcopy_ scipy_dcopy_
#define ddot_ scipy_ddot_
#define dgbmv_ scipy_dgbmv_
#define dgemm_ scipy_dgemm_
#define dgemv_ scipy_dgemv_
#define dger_ scipy_dger_
#define drot_ scipy_drot_
#define drotg_ scipy_drotg_
#define drotm_ scipy_drotm_
#define drotmg_ scipy_drotmg_
#define dsbmv_ scipy_dsbmv_
#define dscal_ scipy_dscal_
#define dspmv_ scipy_dspmv_
#define dspr2_ scipy_dspr2_
#define dspr_ scipy_dspr_
#define dswap_ scipy_dswap_
#define dsymm_ scipy_dsymm_
#define dsymv_ scipy_dsymv_
#define dsyr2_ scipy_dsyr2_
#define dsyr2k_ scipy_dsyr2k_
#define dsyr_ scipy_dsyr_
#define dsyrk_ scipy_dsyrk_
#define dtbmv_ scipy_dtbmv_
#define dtbsv_ scipy_dtbsv_
#define dtpmv_ scipy_dtpmv_
#define dtpsv_ scipy_dtpsv_
#define dtrmm_ scipy_dtrmm_
#define dtrmv_ scipy_dtrmv_
#define dtrsm_ scipy_dtrsm_
#define dtrsv_ scipy_dtrsv_
#define goto_set_num_threads scipy_goto_set_num_threads
#define openblas_get_num_threads scipy_openblas_get_num_threads
#define openblas_set_num_threads scipy_openblas_set_num_threads
#define saxpy_ scipy_saxpy_
#define scopy_ scipy_scopy_
#define sdot_ scipy_sdot_
#define sgbmv_ scipy_sgbmv_
#define sgemm_ scipy_sgemm_
#define sgemv_ scipy_sgemv_
#define sger_ scipy_sger_
#define srot_ scipy_srot_
#define srotg_ scipy_srotg_
#define srotm_ scipy_srotm_
#define srotmg_ scipy_srotmg_
#define ssbmv_ scipy_ssbmv_
#define sscal_ scipy_sscal_
#define sspmv_ scipy_sspmv_
#define sspr2_ scipy_sspr2_
#define sspr_ scipy_sspr_
#define sswap_ scipy_sswap_
#define ssymm_ scipy_ssymm_
#define ssymv_ scipy_ssymv_
#define ssyr2_ scipy_ssyr2_
#define ssyr2k_ scipy_ssyr2k_
#define ssyr_ scipy_ssyr_
#define ssyrk_ scipy_ssyrk_
#define stbmv_ scipy_stbmv_
#define stbsv_ scipy_stbsv_
#define stpmv_ scipy_stpmv_
#define stpsv_ scipy_stpsv_
#define strmm_ scipy_strmm_
#define strmv_ scipy_strmv_
#define strsm_ scipy_strsm_
#define strsv_ scipy_strsv_
#define zaxpy_ scipy_zaxpy_
#define zcopy_ scipy_zcopy_
#define zdscal_ scipy_zdscal_
#define zgbmv_ scipy_zgbmv_
#define zgemm_ scipy_zgemm_
#define zgemv_ scipy_zgemv_
#define zgerc_ scipy_zgerc_
#define zgeru_ scipy_zgeru_
#define zhbmv_ scipy_zhbmv_
#define zhemm_ scipy_zhemm_
#define zhemv_ scipy_zhemv_
#define zher2_ scipy_zher2_
#define zher2k_ scipy_zher2k_
#define zher_ scipy_zher_
#define zherk_ scipy_zherk_
#define zhpmv_ scipy_zhpmv_
#define zhpr2_ scipy_zhpr2_
#define zhpr_ scipy_zhpr_
#define zscal_ scipy_zscal_
#define zswap_ scipy_zswap_
#define zsymm_ scipy_zsymm_
#define zsyr2k_ scipy_zsyr2k_
#define zsyrk_ scipy_zsyrk_
#define ztbmv_ scipy_ztbmv_
#define ztbsv_ scipy_ztbsv_
#define ztpmv_ scipy_ztpmv_
#define ztpsv_ scipy_ztpsv_
#define ztrmm_ scipy_ztrmm_
#define ztrmv_ scipy_ztrmv_
#define ztrsm_ scipy_ztrsm_
#define ztrsv_ scipy_ztrsv_
#endif
